#include "common/nccl_id.hpp"

#include <unistd.h>

#include <cstdlib>

namespace lighthouse::cli {

std::string nccl_id_file() {
  if (const char* f = std::getenv("LIGHTHOUSE_NCCL_ID_FILE")) return f;
  const char* port = std::getenv("MASTER_PORT");
  return std::string("/tmp/lighthouse-nccl-") + (port ? port : "single") + "-" +
         std::to_string(::getppid()) + ".id";
}

}  // namespace lighthouse::cli
