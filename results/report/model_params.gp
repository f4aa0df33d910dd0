alpha_shm = 3.239603e-06
beta_shm = 7.210995e-11
alpha_mpi = 2.855813e-06
beta_mpi = 1.861144e-10
