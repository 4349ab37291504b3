// Schemas of the detaccel operators. The pooling forwards return (output,
// argmax); with_argmax=False (inference) skips the argmax and returns it empty.
// Kernels are registered per backend in
// cpu/ and cuda/; autograd and fake (meta) implementations are registered from
// Python (detaccel/ops/_registration.py).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(detaccel, m) {
  m.def("roi_pool_forward(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width,"
        " bool with_argmax=True) -> (Tensor, Tensor)");
  m.def("roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, int pooled_height, int pooled_width,"
        " int batch_size, int channels, int height, int width) -> Tensor");
  m.def("spp_pool_forward(Tensor input, Tensor rois, float spatial_scale, int[] levels, bool with_argmax=True)"
        " -> (Tensor, Tensor)");
  m.def("spp_pool_backward(Tensor grad, Tensor rois, Tensor argmax, int[] levels,"
        " int batch_size, int channels, int height, int width) -> Tensor");
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  // R²-CNN: integrated feature map and its quantised levels; boxes per level
  // in inclusive feature-cell coordinates with the image of each box.
  m.def("r2cnn_feature_levels(Tensor features, int num_levels) -> (Tensor, Tensor)");
  // grouping: 0 = 8-connected components (flood fill), 1 = the original layer's greedy
  // box growing in raster order; superlevel: level l's set is the cells >= l.
  m.def("r2cnn_level_boxes(Tensor levels, int num_levels, int max_boxes_per_level, int grouping=0,"
        " bool superlevel=False) -> (Tensor, Tensor)");
  // Contrast score of each pixel box on one integrated map [H, W] whose cell c is centred at pixel
  // offset + stride * c: the mean inside the box minus the mean over a ring of `ring` times its size.
  m.def("r2cnn_contrast_scores(Tensor integrated, Tensor boxes, float stride_x, float offset_x, float stride_y,"
        " float offset_y, float ring=0.5) -> Tensor");
}

// `import detaccel._C` loads this library, which registers the operators.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "detaccel compiled operators", -1, nullptr};
  return PyModule_Create(&module_def);
}
