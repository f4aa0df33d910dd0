alpha_shm = 3.027300e-06
beta_shm = 6.698354e-11
alpha_mpi = 2.356175e-06
beta_mpi = 1.373987e-10
