alpha_shm = 2.104313e-06
beta_shm = 3.872089e-11
alpha_mpi = 1.786867e-06
beta_mpi = 1.404403e-10
