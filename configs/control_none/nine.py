# Nine on the control without a flip (python -m tools.planted --preset none --out data/control_none)
include('../control/nine.py')
data_dir = 'data/control_none'
out_dir = 'out/control_none/nine'
