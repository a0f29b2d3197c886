"""Model families. Each module implements the same small contract, used by runner and artifacts:

  CHECKPOINT_SUFFIXES            weight suffixes the PyTorch backends load
  weights_problem(model) -> str  '' if `model` is a file or a downloadable name, else why not
  resolve_weights(model, dir)    a weights path, or a name the model's library downloads into dir
  export_onnx(weights, dst, options, logger) -> dict   writes dst; returns exporter versions
  exporter_fields() -> dict      versions an export depends on (part of its cache key)
  load_torch(weights) -> (nn.Module, metadata)         forward returns the ONNX export's raw outputs
  Model(session, metadata, options, logger)            __call__(image_bgr, **frame_options) -> result
                                                       (frame_options have defaults: the runner warms
                                                       a new session up with a blank image)
      .labels, .option_problem(name, value) -> ''|reason

`options` are the manifest's read-only parameters; `frame_options` the others, read every frame.
"""
