// satlab: command-line client of satlab-server.
//   satlab [--server HOST:PORT] [--json] [--quiet] [--timeout SECONDS]
//          COMMAND [ARGS]
#include <malloc.h>

#include <iostream>

#include "client/cli/app.h"

int main(int argc, char** argv) {
  // A command is a short-lived process whose large buffers (a data set
  // parsed, its request, the curves) are each filled once: glibc maps every
  // block over 128 KiB afresh and unmaps it when freed, so the next one
  // faults its pages in again, and a page fault is expensive in a virtual
  // machine. From the heap, kept until exit, they reuse pages already
  // mapped (`satlab experiment digits`: 1,540 -> 1,170 page faults).
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  return satlab::cli::RunCli(argc, argv, std::cout, std::cerr);
}
