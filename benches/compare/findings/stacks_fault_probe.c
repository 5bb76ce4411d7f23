/* Cost of a fresh stack slot: guard install + first touch of the top page, or a batched
 * MADV_POPULATE_WRITE of the top pages instead (findings/stacks.md, "Prefaulting").
 * gcc -O2 -o /tmp/pf stacks_fault_probe.c; /tmp/pf STRIDE_KIB MODE
 * MODE bit 1: install 16 KiB guards (process_madvise, 64 slots a call); bit 2: populate the
 * top pages with one process_madvise(MADV_POPULATE_WRITE) per 64 slots instead of touching. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define GUARD 102
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t stride = atol(argv[1])*1024; int mode=atoi(argv[2]); size_t n=200000; int batch=64;
  char*base=mmap(0,stride*n,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE,-1,0);
  madvise(base,stride*n,MADV_NOHUGEPAGE);
  int pidfd=syscall(SYS_pidfd_open,getpid(),0);
  struct iovec iov[64];
  double t0=now(), tg=0, tp=0;
  for(size_t s=0;s<n;s+=batch){
    double a=now();
    for(int i=0;i<batch;i++){iov[i].iov_base=base+(s+i)*stride;iov[i].iov_len=16384;}
    if(mode&1){ if(syscall(SYS_process_madvise,pidfd,iov,batch,GUARD,0)<0){perror("guard");return 1;} }
    double b=now(); tg+=b-a;
    if(mode&2){
      for(int i=0;i<batch;i++){iov[i].iov_base=base+(s+i+1)*stride-4096;iov[i].iov_len=4096;}
      if(syscall(SYS_process_madvise,pidfd,iov,batch,MADV_POPULATE_WRITE,0)<0){perror("pop");return 1;}
    } else {
      for(int i=0;i<batch;i++) *(volatile char*)(base+(s+i+1)*stride-8)=1;
    }
    tp+=now()-b;
  }
  printf("stride %zuK mode %d: total %.1f ns/slot guard %.1f touch %.1f\n",stride/1024,mode,(now()-t0)*1e9/n,tg*1e9/n,tp*1e9/n);
}
