-- MoA classification accuracy per feature source and post-processing: NSC, NSCB, their
-- drop (fractions; a query without a neighbour is a miss), and mAP of same-MoA retrieval.
-- Grain: (feature_source, postprocessing).
-- A treatment whose MoA has fewer than two compounds among a protocol's queries can never
-- be right (candidates are other compounds): it is not scored, n_nsc / n_nscb count only
-- scored treatments, a metric with none is NULL; unscored_moas and `note` name the MoAs.
with
neighbors as (select * from moa_neighbors),
moa_compounds as (
    select feature_source, postprocessing, protocol, moa, count(distinct compound) as n_compounds
    from neighbors
    group by feature_source, postprocessing, protocol, moa
),
scorable as (
    select n.*
    from neighbors as n
    join moa_compounds as m using (feature_source, postprocessing, protocol, moa)
    where m.n_compounds >= 2
),
unscored as (
    select
        feature_source, postprocessing,
        list(distinct moa order by moa) as moas
    from moa_compounds
    where n_compounds < 2
    group by feature_source, postprocessing
),
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
    from scorable
    group by feature_source, postprocessing
),
variants as (
    select distinct feature_source, postprocessing from neighbors
)
select
    feature_source, postprocessing, s.nsc, s.nscb, s.nsc - s.nscb as drop,
    coalesce(s.n_nsc, 0) as n_nsc, coalesce(s.n_nscb, 0) as n_nscb, s.map, s.map_nscb,
    u.moas as unscored_moas,
    'not scored (MoAs with fewer than two compounds): ' || array_to_string(u.moas, ', ') as note
from variants
left join scores as s using (feature_source, postprocessing)
left join unscored as u using (feature_source, postprocessing)
order by feature_source, postprocessing
