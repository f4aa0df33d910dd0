alpha_shm = 2.265746e-06
beta_shm = 4.055015e-11
alpha_mpi = 1.720927e-06
beta_mpi = 1.511748e-10
