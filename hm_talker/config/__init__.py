"""Every command's configuration: the structured schemas (`fit.py`: FitConfig, `cmmm.py`: CMMM and its
stage 1; the networks' sections live in hm_talker/model/config.py) and the one loader (`loading.py`)."""
