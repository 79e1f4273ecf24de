"""The trained Table I network as an ONNX graph, and the ONNX Runtime session that runs it.

The graph is built from the trained weights as :func:`hitbench.methods.cnn_network.inference_weights`
folds them (batch normalisation into per-row scale and shift, the input standardisation into the
first convolution), with the per-row scale applied after pooling the columns; it gives the scores
of Keras to about 1e-6. Neither TensorFlow nor Keras is imported here.
"""

from __future__ import annotations

import numpy as np

from hitbench.parallel import available_cores


def to_onnx(weights: dict[str, np.ndarray], frame_shape: tuple[int, int], *, normalisation: str) -> bytes:
    """An ONNX graph equal to the trained network at inference, taking raw frames (n, H, W).

    The graph clips negative values, applies the normalisation (``log1p`` or ``linear``) and
    the training-set standardisation (folded into the first convolution), runs the network
    with batch normalisation folded into scale/shift, and returns P(hit), shape (n,).

    Parameters
    ----------
    weights : dict of numpy.ndarray
        The network's folded weights (:func:`hitbench.methods.cnn_network.inference_weights`).
    frame_shape : tuple of int
        (H, W) of the frames the network was trained on.
    normalisation : {"log1p", "linear"}
        The input transform the model was trained with.

    Returns
    -------
    bytes
        The serialised ONNX model (opset 17).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = frame_shape
    inits: list = []

    def const(name: str, value: np.ndarray, dtype: type = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    w = weights
    pooled = [((size - 6) // 5 - 6) // 5 for size in frame_shape]  # two 7x7 convolutions, each pooled 5x5
    # Keras flattens (h, w, c); ONNX flattens (c, h, w)
    w3 = w["w3"].reshape(*pooled, 4, 16).transpose(2, 0, 1, 3).reshape(-1, 16)

    def row_bn_relu_pool(src: str, scale: np.ndarray, shift: np.ndarray, tag: str) -> list:
        """Per-row batch norm, ReLU, 5x5 max pooling, reordered to touch the full-size tensor once.

        Pool the columns first: within a row the affine map is monotonic, so the column max of
        ``s * x + t`` is ``s * max(x) + t`` for ``s >= 0`` and ``s * min(x) + t`` for ``s < 0``,
        i.e. ``max(s * max(x), s * min(x)) + t``; then pool the rows; ReLU commutes with max.
        """
        cols = {"kernel_shape": [1, 5], "strides": [1, 5]}
        s, t = const(f"s{tag}", scale.reshape(1, 1, -1, 1)), const(f"t{tag}", shift.reshape(1, 1, -1, 1))
        out = [
            helper.make_node("MaxPool", [src], [f"cmax{tag}"], **cols),
            helper.make_node("Mul", [f"cmax{tag}", s], [f"smax{tag}"]),
        ]
        scaled = f"smax{tag}"
        if (scale < 0).any():
            out += [
                helper.make_node("Neg", [src], [f"neg{tag}"]),
                helper.make_node("MaxPool", [f"neg{tag}"], [f"negmax{tag}"], **cols),
                helper.make_node("Neg", [f"negmax{tag}"], [f"cmin{tag}"]),
                helper.make_node("Mul", [f"cmin{tag}", s], [f"smin{tag}"]),
                helper.make_node("Max", [f"smax{tag}", f"smin{tag}"], [f"sboth{tag}"]),
            ]
            scaled = f"sboth{tag}"
        return out + [
            helper.make_node("Add", [scaled, t], [f"a{tag}"]),
            helper.make_node("MaxPool", [f"a{tag}"], [f"rmax{tag}"], kernel_shape=[5, 1], strides=[5, 1]),
            helper.make_node("Relu", [f"rmax{tag}"], [f"p{tag}"]),
        ]

    nodes = [
        helper.make_node("Unsqueeze", ["frames", const("axis1", [1], np.int64)], ["x0"]),
        helper.make_node("Relu", ["x0"], ["clipped"]),
    ]
    if normalisation == "log1p":
        nodes += [
            helper.make_node("Add", ["clipped", const("one", np.ones(1))], ["plus1"]),
            helper.make_node("Log", ["plus1"], ["scaled"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["clipped"], ["scaled"]))
    nodes += [
        helper.make_node(
            "Conv",
            ["scaled", const("w1", w["k1"].transpose(3, 2, 0, 1)), const("b1", w["b1"])],
            ["c1"],
            kernel_shape=[7, 7],
        ),
    ]
    nodes += row_bn_relu_pool("c1", w["s1"], w["t1"], "1")
    nodes += [
        helper.make_node(
            "Conv",
            ["p1", const("w2", w["k2"].transpose(3, 2, 0, 1)), const("b2", w["b2"])],
            ["c2"],
            kernel_shape=[7, 7],
        ),
    ]
    nodes += row_bn_relu_pool("c2", w["s2"], w["t2"], "2")
    nodes += [
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", const("w3", w3), const("b3", w["b3"])], ["d1"]),
        helper.make_node("Relu", ["d1"], ["r3"]),
        helper.make_node("Gemm", ["r3", const("w4", w["w4"]), const("b4", w["b4"])], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["proba"], axis=1),
        helper.make_node("Gather", ["proba", const("hit", 1, np.int64)], ["p_hit"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "reference_cnn",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["n", height, width])],
        [helper.make_tensor_value_info("p_hit", TensorProto.FLOAT, ["n"])],
        initializer=inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hitbench")
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


def onnx_session(onnx_bytes: bytes, *, threads: int | None = None):
    """An ONNX Runtime session tuned for this machine (all cores, graph optimisation).

    The level is ``ORT_ENABLE_EXTENDED``, not ``ORT_ENABLE_ALL``: the latter's NCHWc layout
    pads the 4-filter convolutions to 8/16-channel blocks and measured slower here.

    Parameters
    ----------
    onnx_bytes : bytes
        A serialised model from :func:`to_onnx`.
    threads : int, optional
        Intra-op threads; default: the cores this process may use.

    Returns
    -------
    onnxruntime.InferenceSession
        CUDA provider first when ONNX Runtime has it, then the CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle threads sleep instead of spinning: no slower here, and kinder to a shared CPU
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
