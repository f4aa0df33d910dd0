alpha_shm = 2.387189e-06
beta_shm = 9.901369e-11
alpha_mpi = 1.873929e-06
beta_mpi = 1.377906e-10
