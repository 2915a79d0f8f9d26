// The tool's version (CMake's project version) and the git commit it was
// built from ("unknown" outside a git checkout), for reports and cards.
#pragma once

namespace dfq {

const char* dfq_version();
const char* dfq_git_commit();

}  // namespace dfq
