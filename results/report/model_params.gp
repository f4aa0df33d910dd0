alpha_shm = 3.198257e-06
beta_shm = 7.173250e-11
alpha_mpi = 2.850061e-06
beta_mpi = 1.837538e-10
