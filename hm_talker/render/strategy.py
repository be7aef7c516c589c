class DensifyStrategy: pass
class StrategyConfig: pass
