"""The compiled fit loop: program, chunked runner, ``fit`` and ``fit_many``.

``fit`` runs every epoch -- shuffle, minibatch SGD steps, validation, the
validation loss fed to the strategy as ``measurement(val_loss, epoch)`` --
as one ``lax.scan`` over epochs around a ``lax.scan`` over steps, so Python
runs once per call, not once per step. ``fit_many`` vmaps the same program
over seeds (and base learning rates) to run a sweep as one program.
"""


from lrtransfer._src.train.fitting import FitResult as FitResult
from lrtransfer._src.train.fitting import fit as fit
from lrtransfer._src.train.program import EpochLog as EpochLog
from lrtransfer._src.train.program import FitCarry as FitCarry
from lrtransfer._src.train.program import FitProgram as FitProgram
from lrtransfer._src.train.program import cross_entropy as cross_entropy
from lrtransfer._src.train.program import evaluate as evaluate
from lrtransfer._src.train.program import steps_per_epoch as steps_per_epoch
from lrtransfer._src.train.sweep import SweepResult as SweepResult
from lrtransfer._src.train.sweep import fit_many as fit_many
