alpha_shm = 1.756948e-06
beta_shm = 8.298818e-11
alpha_mpi = 1.042750e-06
beta_mpi = 2.993592e-10
