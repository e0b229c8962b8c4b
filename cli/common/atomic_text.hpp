// Writing a text report (JSON, SVG) so that readers never see half a file: a temporary file in
// the same folder, flushed to disk, then renamed over the destination.
#pragma once

#include <string>

namespace lighthouse::cli {

// Throws lighthouse::Error naming `path` on failure; the temporary file is removed.
void write_text_atomically(const std::string& path, const std::string& contents);

// Throws InvalidArgument(flag, path, ...) unless `path` could be written later: its folder exists
// and `path` is not itself a folder. Called before any long computation.
void check_writable_path(const std::string& flag, const std::string& path);

}  // namespace lighthouse::cli
