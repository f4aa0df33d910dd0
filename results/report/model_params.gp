alpha_shm = 1.595605e-06
beta_shm = 8.704729e-11
alpha_mpi = 1.650414e-06
beta_mpi = 2.185609e-10
