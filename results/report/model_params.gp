alpha_shm = 3.323873e-06
beta_shm = 4.815707e-11
alpha_mpi = 2.373920e-06
beta_mpi = 1.461526e-10
