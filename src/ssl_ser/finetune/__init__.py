"""End-to-end fine-tuning on the probes' splits, into the probes' results table (``ser finetune``).

Layout: :mod:`~ssl_ser.finetune.config` (settings), :mod:`~ssl_ser.finetune.model`
(backbone, pooling, head, freezing, LoRA), :mod:`~ssl_ser.finetune.data` (audio
and rows), :mod:`~ssl_ser.finetune.train` (one fold), :mod:`~ssl_ser.finetune.checkpoint`
(resumable epochs), :mod:`~ssl_ser.finetune.distributed` (torchrun) and
:mod:`~ssl_ser.finetune.run` (folds into cells).
"""
