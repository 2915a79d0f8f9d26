#include "core/version.h"

#include "git_commit.inc"  // generated at build time: cmake/git_commit.cmake

namespace dfq {

const char* dfq_version() { return DFQ_VERSION; }
const char* dfq_git_commit() { return DFQ_GIT_COMMIT; }

}  // namespace dfq
