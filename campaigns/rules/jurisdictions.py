"""Where a number is: its country and, where rules differ inside it, its US state or
Spanish autonomous community."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True)
class Jurisdiction:
    region: str | None  # ISO 3166 of the number
    subdivision: str | None = None  # US state ("FL") or Spanish community ("CT")


@functools.lru_cache(maxsize=4096)
def jurisdiction_for(phone: str) -> Jurisdiction:
    """The country of an E.164 number and, when the numbering plan tells, its subdivision:
    the US state of its area code, or the Spanish community of a geographic number's
    province. Spanish mobiles carry none (only national holidays apply to them)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return Jurisdiction(region=None)
    region = phonenumbers.region_code_for_number(number)
    national = phonenumbers.national_significant_number(number)
    subdivision = None
    if region == "US":
        subdivision = _US_AREA_CODE_STATES.get(national[:3])
    elif region == "ES":
        subdivision = _ES_PREFIX_COMMUNITIES.get(national[:3]) or _ES_PREFIX_COMMUNITIES.get(
            national[:2]
        )
    return Jurisdiction(region=region, subdivision=subdivision)


# US area codes by state. The area code decides the state: a NANP geographic area code never
# crosses a state line, and neither the carrier nor number portability moves it. (Asking
# phonenumbers' geocoder about one number answers "Florida" or "Miami, FL" or nothing, at
# whatever depth its data has; and loading that data costs each process about 100 MB.)
# Generated from the geocoding data of phonenumbers 9.0.43, every prefix of an area code
# voting for the state it names; tests/campaigns/test_rules.py checks that it still agrees
# with the installed data. Area codes newer than the data have no state: federal rules only.
_US_AREA_CODES = {
    "AK": "907",
    "AL": "205 251 256 334 659 938",
    "AR": "327 479 501 870",
    "AZ": "480 520 602 623 928",
    "CA": "209 213 279 310 323 341 350 369 408 415 424 442 510 530 559 562 619 626 628 650 "
    "657 661 669 707 714 738 747 760 805 818 820 831 840 858 909 916 925 949 951",
    "CO": "303 719 720 748 970 983",
    "CT": "203 475 860 959",
    "DC": "202 771",
    "DE": "302",
    "FL": "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 "
    "904 941 954",
    "GA": "229 404 470 478 678 706 762 770 912 943",
    "HI": "808",
    "IA": "319 515 563 641 712",
    "ID": "208 986",
    "IL": "217 224 309 312 331 447 464 618 630 708 730 773 779 815 847 872",
    "IN": "219 260 317 463 574 765 812 930",
    "KS": "316 620 785 913",
    "KY": "270 364 502 606 859",
    "LA": "225 318 337 504 985",
    "MA": "339 351 413 508 617 774 781 857 978",
    "MD": "227 240 301 410 443 667",
    "ME": "207",
    "MI": "231 248 269 313 517 586 616 734 810 906 947 989",
    "MN": "218 320 507 612 651 763 952",
    "MO": "235 314 417 557 573 636 660 816 975",
    "MS": "228 601 662 769",
    "MT": "406",
    "NC": "252 336 472 704 743 828 910 919 980 984",
    "ND": "701",
    "NE": "308 402 531",
    "NH": "603",
    "NJ": "201 551 609 640 732 848 856 862 908 973",
    "NM": "505 575",
    "NV": "702 725 775",
    "NY": "212 315 329 332 347 363 516 518 585 607 631 646 680 716 718 838 845 914 917 929 934",
    "OH": "216 220 234 283 326 330 380 419 440 513 567 614 740 937",
    "OK": "405 539 572 580 918",
    "OR": "458 503 541 971",
    "PA": "215 223 267 272 412 445 484 570 582 610 717 724 814 835 878",
    "RI": "401",
    "SC": "803 821 839 843 854 864",
    "SD": "605",
    "TN": "423 615 629 731 865 901 931",
    "TX": "210 214 254 281 325 346 361 409 430 432 469 512 682 713 726 737 806 817 830 832 "
    "903 915 936 940 945 956 972 979",
    "UT": "385 435 801",
    "VA": "276 434 540 571 686 703 757 804 826 948",
    "VT": "802",
    "WA": "206 253 360 425 509 564",
    "WI": "262 274 353 414 534 608 715 920",
    "WV": "304 681",
    "WY": "307",
}
_US_AREA_CODE_STATES = {
    area_code: state for state, codes in _US_AREA_CODES.items() for area_code in codes.split()
}

# Spanish geographic prefixes (8x and 9x: one per province) by autonomous community, spelled
# as ISO 3166-2:ES and the holidays library's subdivisions. From phonenumbers 9.0.43's
# geocoding data (checked by the tests like the US table). Ceuta and Melilla share the Cádiz
# and Málaga prefixes, so their own holidays are not known from the number.
_ES_PREFIXES = {
    "AN": "850 851 852 853 854 855 856 857 858 859 950 951 952 953 954 955 956 957 958 959",
    "AR": "874 876 878 974 976 978",
    "AS": "884 885 984 985",
    "CB": "842 942",
    "CL": "820 821 823 847 875 879 880 883 887 920 921 923 947 975 979 980 983 987",
    "CM": "825 826 849 867 869 925 926 949 967 969",
    "CN": "822 828 922 928",
    "CT": "83 872 873 877 93 972 973 977",
    "EX": "824 827 924 927",
    "GA": "881 882 886 888 981 982 986 988",
    "IB": "871 971",
    "MC": "868 968",
    "MD": "81 91",
    "NC": "848 948",
    "PV": "843 844 845 846 943 944 945 946",
    "RI": "841 941",
    "VC": "860 861 862 863 864 865 866 960 961 962 963 964 965 966",
}
_ES_PREFIX_COMMUNITIES = {
    prefix: community for community, prefixes in _ES_PREFIXES.items() for prefix in prefixes.split()
}
