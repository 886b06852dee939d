// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title MachineService: the service agreement between one machine and its service vendor.
/// @notice The machine (its own Ethereum account, held by the SBC) asks for service with a
/// hash of the sensor evidence and a fault code; the vendor accepts and then completes the
/// request. Every step emits an event so both parties can follow the agreement off-chain.
contract MachineService {
    enum Status {
        None,
        Requested,
        Accepted,
        Completed
    }

    struct ServiceRequest {
        bytes32 evidenceHash;
        uint32 faultCode;
        Status status;
        uint64 requestedAt;
        uint64 acceptedAt;
        uint64 completedAt;
        bytes32 reportHash;
    }

    address public immutable machine;
    address public immutable vendor;

    /// @notice Number of requests so far; request ids run from 1 to requestCount.
    uint256 public requestCount;
    mapping(uint256 => ServiceRequest) public requests;

    event ServiceRequested(uint256 indexed requestId, bytes32 evidenceHash, uint32 faultCode);
    event ServiceAccepted(uint256 indexed requestId, address indexed vendor);
    event ServiceCompleted(uint256 indexed requestId, bytes32 reportHash);

    modifier onlyMachine() {
        require(msg.sender == machine, "MachineService: caller is not the machine");
        _;
    }

    modifier onlyVendor() {
        require(msg.sender == vendor, "MachineService: caller is not the vendor");
        _;
    }

    constructor(address machine_, address vendor_) {
        require(machine_ != address(0) && vendor_ != address(0), "MachineService: zero address");
        require(machine_ != vendor_, "MachineService: machine and vendor must differ");
        machine = machine_;
        vendor = vendor_;
    }

    /// @notice Ask the vendor for service. Returns the new request id.
    function requestService(bytes32 evidenceHash, uint32 faultCode)
        external
        onlyMachine
        returns (uint256 requestId)
    {
        require(evidenceHash != bytes32(0), "MachineService: evidence hash required");
        requestId = ++requestCount;
        ServiceRequest storage r = requests[requestId];
        r.evidenceHash = evidenceHash;
        r.faultCode = faultCode;
        r.status = Status.Requested;
        r.requestedAt = uint64(block.timestamp);
        emit ServiceRequested(requestId, evidenceHash, faultCode);
    }

    /// @notice The vendor takes the request on.
    function acceptRequest(uint256 requestId) external onlyVendor {
        ServiceRequest storage r = requests[requestId];
        require(r.status == Status.Requested, "MachineService: request is not open");
        r.status = Status.Accepted;
        r.acceptedAt = uint64(block.timestamp);
        emit ServiceAccepted(requestId, msg.sender);
    }

    /// @notice The vendor reports the service done, with a hash of its service report.
    function completeRequest(uint256 requestId, bytes32 reportHash) external onlyVendor {
        ServiceRequest storage r = requests[requestId];
        require(r.status == Status.Accepted, "MachineService: request is not accepted");
        r.status = Status.Completed;
        r.completedAt = uint64(block.timestamp);
        r.reportHash = reportHash;
        emit ServiceCompleted(requestId, reportHash);
    }
}
