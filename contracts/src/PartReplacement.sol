// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PartReplacement: the part supply agreement between one machine and its supplier.
/// @notice The supplier lists prices; the machine orders a part by id and quantity, paying the
/// exact price in Ether, which is held in escrow. The supplier marks the order shipped, the
/// machine confirms delivery, and only then is the amount credited to the supplier, who pulls
/// it with withdraw(). An order not shipped by its deadline can be refunded to the machine.
contract PartReplacement {
    enum Status {
        None,
        Ordered,
        Shipped,
        Delivered,
        Refunded
    }

    struct Order {
        uint256 partId;
        uint32 quantity;
        Status status;
        uint64 orderedAt;
        uint64 shipDeadline;
        uint256 amount;
        bytes32 evidenceHash;
    }

    address public immutable machine;
    address public immutable supplier;
    /// @notice Seconds the supplier has to ship an order before the machine may take a refund.
    uint64 public immutable shippingWindow;
    /// @notice Longest shipping window the constructor accepts (100 years): with it, a ship
    /// deadline (block time + window) stays far below 2^64 for any real block time.
    uint64 public constant MAX_SHIPPING_WINDOW = 100 * 365 days;

    /// @notice Price in wei of one unit of each part; zero means not listed.
    mapping(uint256 => uint256) public priceOf;
    uint256 public orderCount;
    mapping(uint256 => Order) public orders;
    /// @notice Amounts released to the supplier and not yet withdrawn (pull payment).
    mapping(address => uint256) public credits;

    uint256 private _lock = 1;

    event PriceListed(uint256 indexed partId, uint256 price);
    event PartOrdered(
        uint256 indexed orderId,
        uint256 indexed partId,
        uint32 quantity,
        uint256 amount,
        bytes32 evidenceHash,
        uint64 shipDeadline
    );
    event PartShipped(uint256 indexed orderId);
    event DeliveryConfirmed(uint256 indexed orderId, uint256 amount);
    event Withdrawn(address indexed payee, uint256 amount);
    event Refunded(uint256 indexed orderId, uint256 amount);

    modifier onlyMachine() {
        require(msg.sender == machine, "PartReplacement: caller is not the machine");
        _;
    }

    modifier onlySupplier() {
        require(msg.sender == supplier, "PartReplacement: caller is not the supplier");
        _;
    }

    /// @dev A re-entrancy guard on top of checks-effects-interactions: either alone stops the
    /// classic drain, together they also stop cross-function re-entry (refund -> withdraw).
    modifier nonReentrant() {
        require(_lock == 1, "PartReplacement: reentrant call");
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(address machine_, address supplier_, uint64 shippingWindow_) {
        require(machine_ != address(0) && supplier_ != address(0), "PartReplacement: zero address");
        require(machine_ != supplier_, "PartReplacement: machine and supplier must differ");
        require(shippingWindow_ > 0, "PartReplacement: shipping window required");
        require(
            shippingWindow_ <= MAX_SHIPPING_WINDOW,
            "PartReplacement: shipping window longer than 100 years"
        );
        machine = machine_;
        supplier = supplier_;
        shippingWindow = shippingWindow_;
    }

    /// @notice The supplier sets (or, with zero, withdraws) the unit price of a part.
    function setPrice(uint256 partId, uint256 price) external onlySupplier {
        priceOf[partId] = price;
        emit PriceListed(partId, price);
    }

    /// @notice Order `quantity` units of `partId`, paying exactly price x quantity.
    function orderPart(uint256 partId, uint32 quantity, bytes32 evidenceHash)
        external
        payable
        onlyMachine
        returns (uint256 orderId)
    {
        uint256 price = priceOf[partId];
        require(price > 0, "PartReplacement: part not listed");
        require(quantity > 0, "PartReplacement: quantity must be positive");
        // Checked here so an absurd listing gives a reason instead of an arithmetic Panic.
        require(price <= type(uint256).max / quantity, "PartReplacement: price x quantity overflows");
        require(msg.value == price * quantity, "PartReplacement: exact price required");
        require(
            block.timestamp <= type(uint64).max - shippingWindow,
            "PartReplacement: shipping deadline overflows"
        );
        orderId = ++orderCount;
        uint64 deadline = uint64(block.timestamp) + shippingWindow;
        orders[orderId] = Order({
            partId: partId,
            quantity: quantity,
            status: Status.Ordered,
            orderedAt: uint64(block.timestamp),
            shipDeadline: deadline,
            amount: msg.value,
            evidenceHash: evidenceHash
        });
        emit PartOrdered(orderId, partId, quantity, msg.value, evidenceHash, deadline);
    }

    /// @notice The supplier reports the order shipped; only before its deadline.
    function markShipped(uint256 orderId) external onlySupplier {
        Order storage o = orders[orderId];
        require(o.status == Status.Ordered, "PartReplacement: order is not open");
        require(block.timestamp <= o.shipDeadline, "PartReplacement: shipping deadline passed");
        o.status = Status.Shipped;
        emit PartShipped(orderId);
    }

    /// @notice The machine confirms delivery, releasing the escrow to the supplier's credit.
    function confirmDelivery(uint256 orderId) external onlyMachine {
        Order storage o = orders[orderId];
        require(o.status == Status.Shipped, "PartReplacement: order is not shipped");
        o.status = Status.Delivered;
        credits[supplier] += o.amount;
        emit DeliveryConfirmed(orderId, o.amount);
    }

    /// @notice The supplier pulls every amount released to it.
    function withdraw() external onlySupplier nonReentrant {
        uint256 amount = credits[msg.sender];
        require(amount > 0, "PartReplacement: nothing to withdraw");
        credits[msg.sender] = 0;
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        require(ok, "PartReplacement: transfer failed");
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice The machine takes its payment back for an order not shipped by its deadline.
    function refund(uint256 orderId) external onlyMachine nonReentrant {
        Order storage o = orders[orderId];
        require(o.status == Status.Ordered, "PartReplacement: order is not open");
        require(block.timestamp > o.shipDeadline, "PartReplacement: deadline not reached");
        uint256 amount = o.amount;
        o.status = Status.Refunded;
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        require(ok, "PartReplacement: transfer failed");
        emit Refunded(orderId, amount);
    }
}
