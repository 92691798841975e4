"""Transfer tasks: the embedded ones and the user's own data files.

Public API only: the code lives in ``lrtransfer._src``.
"""

from lrtransfer._src.data import DataError as DataError
from lrtransfer._src.data import Split as Split
from lrtransfer._src.data import TASKS as TASKS
from lrtransfer._src.data import TransferTask as TransferTask
from lrtransfer._src.data import get_task as get_task
from lrtransfer._src.data import load_split_file as load_split_file
from lrtransfer._src.data import load_user_task as load_user_task
