# The bundled sample models, packed, signed with a build-local key and installed into
# build/models (the agent's default repository when run from the build tree).
if(OUTPOST_SAMPLES_DIR AND EXISTS "${OUTPOST_SAMPLES_DIR}/silero_vad_v5.onnx")
  file(GLOB _templates ${CMAKE_SOURCE_DIR}/models/*/manifest.json)
  add_custom_command(
    OUTPUT ${CMAKE_BINARY_DIR}/models/.stamp
    COMMAND ${CMAKE_SOURCE_DIR}/scripts/install-samples.sh ${CMAKE_BINARY_DIR} ${OUTPOST_SAMPLES_DIR} ${CMAKE_SOURCE_DIR}
    DEPENDS outpost ${_templates} ${CMAKE_SOURCE_DIR}/scripts/install-samples.sh
    COMMENT "Packing, signing and installing the sample models")
  add_custom_target(sample_models ALL DEPENDS ${CMAKE_BINARY_DIR}/models/.stamp)
else()
  message(WARNING "Sample models not found: run scripts/setup.sh")
endif()
