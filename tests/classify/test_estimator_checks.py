"""scikit-learn's own estimator checks for the toolkit's other estimators (the MLP: test_mlp)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from ssl_ser.classify.registry import HistXGB, LowRankProjection


@parametrize_with_checks(
    [
        HistXGB(n_estimators=5, max_depth=2),
        HistXGB(n_estimators=5, max_depth=2, early_stopping_rounds=None),
        LowRankProjection(n_components=3),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
