-- MoA classification accuracy per feature source and post-processing: NSC, NSCB, their
-- drop (fractions; a query without a neighbour is a miss), and mAP of same-MoA retrieval.
-- Grain: (feature_source, postprocessing).
with
neighbors as (select * from moa_neighbors),
scores as (
    select
        feature_source,
        postprocessing,
        avg(is_correct::double) filter (where protocol = 'nsc') as nsc,
        avg(is_correct::double) filter (where protocol = 'nscb') as nscb,
        count(*) filter (where protocol = 'nsc') as n_nsc,
        count(*) filter (where protocol = 'nscb') as n_nscb,
        avg(average_precision) filter (where protocol = 'nsc') as map,
        avg(average_precision) filter (where protocol = 'nscb') as map_nscb
    from neighbors
    group by feature_source, postprocessing
)
select
    feature_source, postprocessing, nsc, nscb, nsc - nscb as drop,
    n_nsc, n_nscb, map, map_nscb
from scores
order by feature_source, postprocessing
