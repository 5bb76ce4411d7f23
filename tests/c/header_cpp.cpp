// ivy.h must compile as C++ (extern "C" guards) and link: a C++ program
// calling the C ABI directly.
#include <cstdio>
#include <cstring>

#include "ivy.h"

extern "C" void *plus_one(void *arg) { return static_cast<char *>(arg) + 1; }

int main() {
    static char base[2];
    void *r = nullptr;
    ivy_config_t cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    if (ivy_runtime_run(&cfg, plus_one, base, &r) != 0 || r != base + 1) {
        std::fprintf(stderr, "ivy_runtime_run from C++ failed\n");
        return 1;
    }
    if (std::strcmp(ivy_strerror(IVY_ETIMEDOUT), "deadline passed") != 0) return 1;
    return 0;
}
