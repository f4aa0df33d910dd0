alpha_shm = 1.074129e-06
beta_shm = 8.881541e-11
alpha_mpi = 6.490563e-07
beta_mpi = 2.287972e-10
