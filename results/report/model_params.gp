alpha_shm = 2.077907e-06
beta_shm = 8.874269e-11
alpha_mpi = 1.704205e-06
beta_mpi = 1.439908e-10
