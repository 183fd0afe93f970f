# Lays the bundled sample models out as a model repository under build/models, the agent's
# default repository when run from the build tree.
if(OUTPOST_SAMPLES_DIR AND EXISTS "${OUTPOST_SAMPLES_DIR}/silero_vad_v5.onnx")
  set(_repo ${CMAKE_BINARY_DIR}/models)
  set(_samples
    "silero_vad|silero_vad_v5.onnx"
    "melspectrogram|melspectrogram.onnx"
    "wakeword_embedding|embedding_model.onnx"
    "hey_jarvis|hey_jarvis_v0.1.onnx"
    "ppocr_det|ch_PP-OCRv4_det_infer.onnx"
    "ppocr_rec|ch_PP-OCRv4_rec_infer.onnx")
  foreach(entry IN LISTS _samples)
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 name)
    list(GET parts 1 file)
    file(MAKE_DIRECTORY ${_repo}/${name}/1)
    file(COPY_FILE ${OUTPOST_SAMPLES_DIR}/${file} ${_repo}/${name}/1/model.onnx ONLY_IF_DIFFERENT)
    if(EXISTS ${CMAKE_SOURCE_DIR}/models/${name}/manifest.json)
      file(COPY_FILE ${CMAKE_SOURCE_DIR}/models/${name}/manifest.json ${_repo}/${name}/1/manifest.json
           ONLY_IF_DIFFERENT)
    endif()
  endforeach()
  file(COPY_FILE ${OUTPOST_SAMPLES_DIR}/ppocr_keys_v1.txt ${_repo}/ppocr_rec/1/ppocr_keys_v1.txt ONLY_IF_DIFFERENT)
else()
  message(WARNING "Sample models not found: run scripts/setup.sh")
endif()
