alpha_shm = 1.628479e-06
beta_shm = 6.247737e-11
alpha_mpi = 1.765117e-06
beta_mpi = 1.521571e-10
