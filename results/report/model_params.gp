alpha_shm = 2.102468e-06
beta_shm = 3.789647e-11
alpha_mpi = 1.806633e-06
beta_mpi = 1.381290e-10
