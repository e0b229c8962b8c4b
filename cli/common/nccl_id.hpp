// Where the ranks that torchrun starts meet: the file through which rank 0 hands its NCCL
// unique id to the others (make_nccl_communicator_from_env), shared by `lighthouse bench --cp`
// and `lighthouse train --cp` on GPUs.
#pragma once

#include <string>

namespace lighthouse::cli {

// LIGHTHOUSE_NCCL_ID_FILE when set (several nodes: a path on a shared file system); else one file
// per torchrun job in /tmp (one node): torchrun's ranks of a job are children of one agent
// process, so its pid and MASTER_PORT tell jobs apart and a stale file of an earlier job is never
// read.
std::string nccl_id_file();

}  // namespace lighthouse::cli
