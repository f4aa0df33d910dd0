alpha_shm = 1.542906e-06
beta_shm = 9.522238e-11
alpha_mpi = 8.923748e-07
beta_mpi = 4.016724e-10
