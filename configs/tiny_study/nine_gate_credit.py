# Gate credit assignment (configs/study/nine_gate_credit.py at tiny scale)
include('../tiny.py')
gate_credit = 0.1
out_dir = 'out/tiny_study/nine_gate_credit_s0'
