alpha_shm = 2.142762e-06
beta_shm = 3.737983e-11
alpha_mpi = 1.782718e-06
beta_mpi = 1.360797e-10
