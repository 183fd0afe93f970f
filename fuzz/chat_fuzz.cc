// libFuzzer target for the chat front end: OpenAI request bodies and tokenizers (see
// chat_fuzz_input.h).
#include "chat_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  outpost_fuzz::RunChatInput(data, size);
  return 0;
}
