alpha_shm = 2.138952e-06
beta_shm = 3.890002e-11
alpha_mpi = 1.767062e-06
beta_mpi = 1.401461e-10
