// The property every JSON-reading fuzz target checks on top of its own: nothing nested deeper
// than the entry point's limit is ever accepted. Counted here on the raw text (brackets outside
// strings), independently of the parser under test.
#pragma once

#include <string_view>

namespace outpost_fuzz {

inline int MaxNesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// Traps when text that was accepted nests deeper than `limit`.
inline void CheckAcceptedNesting(std::string_view accepted, int limit) {
  if (MaxNesting(accepted) > limit) __builtin_trap();
}

}  // namespace outpost_fuzz
