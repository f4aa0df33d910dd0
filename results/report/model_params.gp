alpha_shm = 1.193522e-06
beta_shm = 5.553046e-11
alpha_mpi = 8.770875e-07
beta_mpi = 1.430613e-10
