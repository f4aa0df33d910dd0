alpha_shm = 4.104545e-06
beta_shm = 9.344552e-11
alpha_mpi = 3.291468e-06
beta_mpi = 1.958656e-10
