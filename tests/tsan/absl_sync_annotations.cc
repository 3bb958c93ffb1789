// ThreadSanitizer builds only (-DSATLAB_SANITIZE=thread).
//
// Debian's Abseil is not built with -fsanitize=thread, so its Mutex,
// CondVar and Notification carry no TSan annotations: TSan sees neither the
// lock nor the unlock, and would report every ABSL_GUARDED_BY member touched
// from two threads as a race. The linker's --wrap (top-level CMakeLists.txt)
// routes our code's calls to these functions through the wrappers below,
// which tell TSan what the real Abseil function does (lock, unlock, wait)
// with its mutex annotation API, then call the real one. gRPC's own calls
// into Abseil are not routed (--wrap only rewrites references in objects
// linked statically), so gRPC's internal synchronization stays invisible:
// docs/testing.md says what that means for the TSan stage.
//
// SATLAB_ABSL_NS is Abseil's mangled inline namespace ("7debian3" on
// Debian 12), read from absl/base/options.h at configure time.

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" {
// From compiler-rt's sanitizer/tsan_interface.h (GCC ships no sanitizer
// headers; libtsan exports the same functions).
void __tsan_mutex_pre_lock(void* addr, unsigned flags);
void __tsan_mutex_post_lock(void* addr, unsigned flags, int recursion);
int __tsan_mutex_pre_unlock(void* addr, unsigned flags);
void __tsan_mutex_post_unlock(void* addr, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}

namespace {

constexpr unsigned kReadLock = 1 << 3;
constexpr unsigned kTryLock = 1 << 4;
constexpr unsigned kTryLockFailed = 1 << 5;

void Locked(absl::Mutex* mu, unsigned flags) {
  __tsan_mutex_post_lock(mu, flags, 0);
}
// Around a call that releases `mu` and takes it again before returning
// (Await, CondVar::Wait): a release before, an acquire after.
void ReleaseForWait(absl::Mutex* mu) { __tsan_mutex_pre_unlock(mu, 0); }
void ReacquireAfterWait(absl::Mutex* mu) {
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  __tsan_mutex_post_lock(mu, 0, 0);
}

}  // namespace

#define SATLAB_REAL(name) __asm__("__real_" name)
#define SATLAB_WRAP(name) __asm__("__wrap_" name)
#define SATLAB_SYM(prefix, tail) prefix SATLAB_ABSL_NS tail

// Mutex::Lock / Unlock / ReaderLock / ReaderUnlock / TryLock
#define SATLAB_LOCK SATLAB_SYM("_ZN4absl", "5Mutex4LockEv")
#define SATLAB_UNLOCK SATLAB_SYM("_ZN4absl", "5Mutex6UnlockEv")
#define SATLAB_READER_LOCK SATLAB_SYM("_ZN4absl", "5Mutex10ReaderLockEv")
#define SATLAB_READER_UNLOCK SATLAB_SYM("_ZN4absl", "5Mutex12ReaderUnlockEv")
#define SATLAB_TRY_LOCK SATLAB_SYM("_ZN4absl", "5Mutex7TryLockEv")
#define SATLAB_AWAIT SATLAB_SYM("_ZN4absl", "5Mutex5AwaitERKNS0_9ConditionE")
#define SATLAB_AWAIT_TIMEOUT \
  SATLAB_SYM("_ZN4absl",     \
             "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE")
#define SATLAB_LOCK_WHEN \
  SATLAB_SYM("_ZN4absl", "5Mutex8LockWhenERKNS0_9ConditionE")
#define SATLAB_CV_WAIT SATLAB_SYM("_ZN4absl", "7CondVar4WaitEPNS0_5MutexE")
#define SATLAB_CV_WAIT_TIMEOUT                            \
  SATLAB_SYM("_ZN4absl",                                  \
             "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_" \
             "8DurationE")
#define SATLAB_NOTIFY SATLAB_SYM("_ZN4absl", "12Notification6NotifyEv")
#define SATLAB_WAIT_NOTIFICATION \
  SATLAB_SYM("_ZNK4absl", "12Notification19WaitForNotificationEv")
#define SATLAB_WAIT_NOTIFICATION_TIMEOUT \
  SATLAB_SYM("_ZNK4absl",                \
             "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE")

extern "C" {
void RealLock(absl::Mutex*) SATLAB_REAL(SATLAB_LOCK);
void RealUnlock(absl::Mutex*) SATLAB_REAL(SATLAB_UNLOCK);
void RealReaderLock(absl::Mutex*) SATLAB_REAL(SATLAB_READER_LOCK);
void RealReaderUnlock(absl::Mutex*) SATLAB_REAL(SATLAB_READER_UNLOCK);
bool RealTryLock(absl::Mutex*) SATLAB_REAL(SATLAB_TRY_LOCK);
void RealAwait(absl::Mutex*, const absl::Condition&) SATLAB_REAL(SATLAB_AWAIT);
bool RealAwaitWithTimeout(absl::Mutex*, const absl::Condition&, absl::Duration)
    SATLAB_REAL(SATLAB_AWAIT_TIMEOUT);
void RealLockWhen(absl::Mutex*, const absl::Condition&)
    SATLAB_REAL(SATLAB_LOCK_WHEN);
void RealCondVarWait(absl::CondVar*, absl::Mutex*) SATLAB_REAL(SATLAB_CV_WAIT);
bool RealCondVarWaitWithTimeout(absl::CondVar*, absl::Mutex*, absl::Duration)
    SATLAB_REAL(SATLAB_CV_WAIT_TIMEOUT);
void RealNotify(absl::Notification*) SATLAB_REAL(SATLAB_NOTIFY);
void RealWaitForNotification(const absl::Notification*)
    SATLAB_REAL(SATLAB_WAIT_NOTIFICATION);
bool RealWaitForNotificationWithTimeout(const absl::Notification*,
                                        absl::Duration)
    SATLAB_REAL(SATLAB_WAIT_NOTIFICATION_TIMEOUT);

void WrapLock(absl::Mutex* mu) SATLAB_WRAP(SATLAB_LOCK);
void WrapLock(absl::Mutex* mu) {
  __tsan_mutex_pre_lock(mu, 0);
  RealLock(mu);
  Locked(mu, 0);
}

void WrapUnlock(absl::Mutex* mu) SATLAB_WRAP(SATLAB_UNLOCK);
void WrapUnlock(absl::Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, 0);
  RealUnlock(mu);
  __tsan_mutex_post_unlock(mu, 0);
}

void WrapReaderLock(absl::Mutex* mu) SATLAB_WRAP(SATLAB_READER_LOCK);
void WrapReaderLock(absl::Mutex* mu) {
  __tsan_mutex_pre_lock(mu, kReadLock);
  RealReaderLock(mu);
  Locked(mu, kReadLock);
}

void WrapReaderUnlock(absl::Mutex* mu) SATLAB_WRAP(SATLAB_READER_UNLOCK);
void WrapReaderUnlock(absl::Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, kReadLock);
  RealReaderUnlock(mu);
  __tsan_mutex_post_unlock(mu, kReadLock);
}

bool WrapTryLock(absl::Mutex* mu) SATLAB_WRAP(SATLAB_TRY_LOCK);
bool WrapTryLock(absl::Mutex* mu) {
  __tsan_mutex_pre_lock(mu, kTryLock);
  const bool locked = RealTryLock(mu);
  Locked(mu, locked ? kTryLock : kTryLock | kTryLockFailed);
  return locked;
}

void WrapAwait(absl::Mutex* mu, const absl::Condition& cond)
    SATLAB_WRAP(SATLAB_AWAIT);
void WrapAwait(absl::Mutex* mu, const absl::Condition& cond) {
  ReleaseForWait(mu);
  RealAwait(mu, cond);
  ReacquireAfterWait(mu);
}

bool WrapAwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                          absl::Duration timeout)
    SATLAB_WRAP(SATLAB_AWAIT_TIMEOUT);
bool WrapAwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                          absl::Duration timeout) {
  ReleaseForWait(mu);
  const bool met = RealAwaitWithTimeout(mu, cond, timeout);
  ReacquireAfterWait(mu);
  return met;
}

void WrapLockWhen(absl::Mutex* mu, const absl::Condition& cond)
    SATLAB_WRAP(SATLAB_LOCK_WHEN);
void WrapLockWhen(absl::Mutex* mu, const absl::Condition& cond) {
  __tsan_mutex_pre_lock(mu, 0);
  RealLockWhen(mu, cond);
  Locked(mu, 0);
}

void WrapCondVarWait(absl::CondVar* cv, absl::Mutex* mu)
    SATLAB_WRAP(SATLAB_CV_WAIT);
void WrapCondVarWait(absl::CondVar* cv, absl::Mutex* mu) {
  ReleaseForWait(mu);
  RealCondVarWait(cv, mu);
  ReacquireAfterWait(mu);
}

bool WrapCondVarWaitWithTimeout(absl::CondVar* cv, absl::Mutex* mu,
                                absl::Duration timeout)
    SATLAB_WRAP(SATLAB_CV_WAIT_TIMEOUT);
bool WrapCondVarWaitWithTimeout(absl::CondVar* cv, absl::Mutex* mu,
                                absl::Duration timeout) {
  ReleaseForWait(mu);
  const bool timed_out = RealCondVarWaitWithTimeout(cv, mu, timeout);
  ReacquireAfterWait(mu);
  return timed_out;
}

void WrapNotify(absl::Notification* n) SATLAB_WRAP(SATLAB_NOTIFY);
void WrapNotify(absl::Notification* n) {
  __tsan_release(n);
  RealNotify(n);
}

void WrapWaitForNotification(const absl::Notification* n)
    SATLAB_WRAP(SATLAB_WAIT_NOTIFICATION);
void WrapWaitForNotification(const absl::Notification* n) {
  RealWaitForNotification(n);
  __tsan_acquire(const_cast<absl::Notification*>(n));
}

bool WrapWaitForNotificationWithTimeout(const absl::Notification* n,
                                        absl::Duration timeout)
    SATLAB_WRAP(SATLAB_WAIT_NOTIFICATION_TIMEOUT);
bool WrapWaitForNotificationWithTimeout(const absl::Notification* n,
                                        absl::Duration timeout) {
  const bool notified = RealWaitForNotificationWithTimeout(n, timeout);
  if (notified) __tsan_acquire(const_cast<absl::Notification*>(n));
  return notified;
}
}  // extern "C"
