module ivybench

go 1.19
