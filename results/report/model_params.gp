alpha_shm = 2.166530e-06
beta_shm = 8.846350e-11
alpha_mpi = 1.781805e-06
beta_mpi = 1.426606e-10
