"""The SSM ops of DESIGN.md and diag_scan (the scan of S5 layers), one module per op: its plain-torch
reference, its kernel primitives (declared through _primitives), its autograd.Function and its
public function, which dssm_kernels re-exports (dk.vandermonde, dk.vandermonde_ref, ...). The
package binds no names of its own, so dssm_kernels.ops.<op> is always the module."""
