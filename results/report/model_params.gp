alpha_shm = 2.228306e-06
beta_shm = 3.824621e-11
alpha_mpi = 1.789886e-06
beta_mpi = 1.423508e-10
