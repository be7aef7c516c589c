class GaussianModel: pass
