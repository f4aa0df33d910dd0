alpha_shm = 2.281485e-06
beta_shm = 4.087618e-11
alpha_mpi = 1.966388e-06
beta_mpi = 1.636445e-10
