#include "aten.h"

#include <atomic>

namespace dssm {

namespace {
std::atomic<bool> g_fill_nan{false};
}

bool fill_outputs_with_nan() { return g_fill_nan.load(std::memory_order_relaxed); }
void set_fill_outputs_with_nan(bool on) { g_fill_nan.store(on, std::memory_order_relaxed); }

std::vector<Binder>& binders() {
  static std::vector<Binder> all;  // filled by the families' static RegisterBinder objects at load time
  return all;
}

}  // namespace dssm
