"""Model families. A manifest names a model module and, per set of weights it loads, a weights module
(the model module itself for the `model` weights); either may be `module:object`, an object in a module
that implements the contract (one module serving several similar families). A weights module implements,
for runner and artifacts:

  CHECKPOINTS                    what it exports to ONNX, for messages ("a checkpoint (.pt)"; "" if nothing)
  is_checkpoint(path) -> bool    whether `path` is such weights (exported, or loaded by PyTorch backends)
  weights_problem(model) -> str  '' if `model` is a file or a downloadable name, else why not
  resolve_weights(model, dir)    a weights path, or a name the model's library downloads into dir
  export_onnx(weights, dst, options, logger) -> dict   writes dst; returns exporter versions
  exporter_fields() -> dict      versions an export depends on (part of its cache key)
  load_torch(weights, options) -> (nn.Module, metadata)   forward returns the ONNX export's raw outputs
                                                       (only for models whose cuda / rocm run PyTorch)
The model module also implements

  build_model(sessions, metadata, options, logger)     sessions and metadata keyed by weights parameter
      -> model: __call__(image_bgr, **frame_options) -> result
                (frame_options have defaults: the runner warms a new model up with a blank image)
                .labels, .option_problem(name, value) -> ''|reason

`options` are the manifest's parameters that are not read per frame; `frame_options` the others.
"""
