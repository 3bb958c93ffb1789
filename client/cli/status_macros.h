// Early-return helpers for absl::Status(Or) in the CLI's command code.
#ifndef SATLAB_CLIENT_CLI_STATUS_MACROS_H_
#define SATLAB_CLIENT_CLI_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"

// Declares `lhs` as the value of the StatusOr `expr`, or returns its status.
#define SATLAB_ASSIGN_OR_RETURN(lhs, expr)      \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

// Returns the Status `expr` when it is not OK.
#define SATLAB_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    if (absl::Status _s = (expr); !_s.ok()) return _s; \
  } while (0)

#endif  // SATLAB_CLIENT_CLI_STATUS_MACROS_H_
