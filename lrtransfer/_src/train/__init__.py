"""The compiled fit loop: program, chunked runner, ``fit`` and ``fit_many``.

``fit`` runs every epoch -- shuffle, minibatch steps in train mode,
validation in eval mode, the evaluation fed to the strategies as one
``measurement(count=epochs done, monitor=..., val_loss=..., val_accuracy=...,
train_loss=...)`` -- as one ``lax.scan`` over epochs around a ``lax.scan``
over steps, so Python runs once per call, not once per step. ``fit_many``
vmaps the same program over seeds (and base learning rates). Programs are
compiled once per model structure, recipe settings, sizes and options, and
cached: data, keys, base rates and source parameters are arguments, and a
recipe counts by its settings (``program.recipe_key``: every field but its
name and base rate; user lambdas by identity), so equal recipes built apart
share one program. ``clear_compiled_cache()`` frees them.
"""


from lrtransfer._src.train.evaluation import evaluate as evaluate
from lrtransfer._src.train.fitting import FitResult as FitResult
from lrtransfer._src.train.fitting import fit as fit
from lrtransfer._src.train.program import EpochLog as EpochLog
from lrtransfer._src.train.program import FitCarry as FitCarry
from lrtransfer._src.train.program import FitProgram as FitProgram
from lrtransfer._src.train.program import cross_entropy as cross_entropy
from lrtransfer._src.train.program import steps_per_epoch as steps_per_epoch
from lrtransfer._src.train.sweep import SweepResult as SweepResult
from lrtransfer._src.train.sweep import fit_many as fit_many
