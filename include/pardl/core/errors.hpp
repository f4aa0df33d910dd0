// Error types shared by every layer of pardl, and the PARDL_REQUIRE check.
// Every failure a user can cause (bad data, bad flags, bad checkpoints, numerical blow-up, a failed
// rank) surfaces as one of these exceptions with a message that says what and where.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pardl {

/// Base class of every exception pardl throws on purpose.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A dataset file is missing, unreadable, truncated or inconsistent.
class DataError : public Error {
public:
    using Error::Error;
};

/// A run-time option (flag, batch size, thread count, ...) is out of range.
class ConfigError : public Error {
public:
    using Error::Error;
};

/// A checkpoint is missing, corrupt, or belongs to another model.
class CheckpointError : public Error {
public:
    using Error::Error;
};

/// Training produced a non-finite loss or the replicas diverged.
class NumericalError : public Error {
public:
    using Error::Error;
};

/// A communication call failed (an MPI error code, a mismatch between ranks).
class CommError : public Error {
public:
    using Error::Error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}
} // namespace detail

} // namespace pardl

/// Throws `ExceptionType` with the streamed message when `cond` is false.
/// Used for run-time preconditions a caller can violate; internal invariants use assert.
#define PARDL_REQUIRE(cond, ExceptionType, ...)                                                              \
    do {                                                                                                     \
        if (!(cond)) throw ExceptionType(::pardl::detail::concat(__VA_ARGS__));                              \
    } while (false)
