#include "common/machine.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#ifdef LIGHTHOUSE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace lighthouse::cli {

MachineInfo machine_info() {
  MachineInfo info;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) info.hostname = host;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos)
        info.cpu_model = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  }
  info.hardware_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return info;
}

#ifdef LIGHTHOUSE_HAVE_OPENBLAS
namespace {

// The median of `repeats` timed calls of `run`, after one untimed warm-up (thread pool start,
// page faults).
template <class Run>
double median_seconds(Run&& run, int repeats) {
  run();
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace
#endif

std::optional<double> measure_sgemm_gflops(int n, int threads, int repeats) {
#ifdef LIGHTHOUSE_HAVE_OPENBLAS
  if (n <= 0 || repeats <= 0) return std::nullopt;
  const int workers =
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const auto count = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  // Non-trivial values: some BLAS builds shortcut on zeros.
  std::vector<float> a(count), b(count);
  for (std::size_t i = 0; i < count; ++i) {
    a[i] = static_cast<float>(i % 97) * 0.01f - 0.48f;
    b[i] = static_cast<float>(i % 89) * 0.01f - 0.44f;
  }
  // One output per worker: the per-thread mode writes them concurrently.
  std::vector<std::vector<float>> c(static_cast<std::size_t>(workers),
                                    std::vector<float>(count, 0.0f));
  auto product = [&](float* out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, out, n);
  };
  const double flops = 2.0 * n * static_cast<double>(n) * n;
  const int previous = openblas_get_num_threads();
  // Two ways to use the cores, and the faster one is the machine's rate: one product on
  // OpenBLAS's own threads (how `lighthouse bench`'s CPU attention calls it), and one
  // single-threaded product per worker side by side (how the CPU trainer calls it, inside OpenMP).
  // With only the first, the trainer measured 136-154% "of SGEMM" on a 2-core machine.
  openblas_set_num_threads(workers);
  const double pooled = flops / median_seconds([&] { product(c[0].data()); }, repeats);
  openblas_set_num_threads(1);
  const double side_by_side = workers * flops /
                              median_seconds(
                                  [&] {
#pragma omp parallel for num_threads(workers) schedule(static, 1)
                                    for (int w = 0; w < workers; ++w)
                                      product(c[static_cast<std::size_t>(w)].data());
                                  },
                                  repeats);
  openblas_set_num_threads(previous);
  return std::max(pooled, side_by_side) / 1e9;
#else
  (void)n;
  (void)threads;
  (void)repeats;
  return std::nullopt;
#endif
}

std::int64_t peak_rss_bytes() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace lighthouse::cli
